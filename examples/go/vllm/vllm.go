// Package vllm is an idiomatic Go binding of libvllm (found through pkg-config): an Engine
// that generates whole completions or streams deltas over a channel, where cancelling the
// context aborts the request. Calls are safe from any number of goroutines.
package vllm

/*
#cgo pkg-config: vllm
#include <stdlib.h>
#include <vllm.h>
*/
import "C"

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"unsafe"
)

// Status is a libvllm status code (VLLM_STATUS_*).
type Status int

const (
	StatusOK              Status = C.VLLM_STATUS_OK
	StatusInvalidArgument Status = C.VLLM_STATUS_INVALID_ARGUMENT
	StatusNotFound        Status = C.VLLM_STATUS_NOT_FOUND
	StatusLoadFailed      Status = C.VLLM_STATUS_LOAD_FAILED
	StatusRejected        Status = C.VLLM_STATUS_REJECTED
	StatusTimeout         Status = C.VLLM_STATUS_TIMEOUT
)

// Error is a failed libvllm call: its status and the library's message.
type Error struct {
	Status  Status
	Call    string
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: %s: %s", e.Call, C.GoString(C.vllm_status_str(C.int(e.Status))), e.Message)
}

// call runs f on one locked OS thread, so the thread-local last error belongs to it.
func call(name string, f func() C.enum_VllmStatus) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	s := f()
	if s == C.VLLM_STATUS_OK {
		return nil
	}
	n := C.vllm_last_error(nil, 0)
	buf := make([]byte, n+1)
	C.vllm_last_error((*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)))
	return &Error{Status: Status(s), Call: name, Message: string(buf[:n])}
}

// FinishReason says why a sequence ended.
type FinishReason int

const (
	FinishNone   FinishReason = C.VLLM_FINISH_REASON_NONE
	FinishStop   FinishReason = C.VLLM_FINISH_REASON_STOP
	FinishLength FinishReason = C.VLLM_FINISH_REASON_LENGTH
	FinishAbort  FinishReason = C.VLLM_FINISH_REASON_ABORT
	FinishError  FinishReason = C.VLLM_FINISH_REASON_ERROR
)

// Params are a request's sampling parameters. Zero values mean vLLM's defaults, except
// Temperature: its zero value is greedy decoding.
type Params struct {
	Temperature float32 // 0: greedy
	TopP        float32 // 0: 1
	TopK        int32   // 0: off
	MaxTokens   uint32  // 0: 16
	IgnoreEOS   bool
	Seed        *uint64
	Stop        []string
}

// Delta is one streamed piece of a sequence.
type Delta struct {
	Text         string
	TokenIDs     []uint32
	Finished     bool
	FinishReason FinishReason
	Err          error
}

// Engine is a loaded model with its engine thread. Close waits for the streams in flight.
type Engine struct {
	h       *C.VllmEngine
	mu      sync.RWMutex // read-held by every call; Close takes it for writing
	closing bool         // set by Close: streams abort their requests and end
	streams sync.WaitGroup
}

// errClosed is returned by calls on a closed Engine.
var errClosed = &Error{Status: StatusInvalidArgument, Call: "vllm", Message: "engine is closed"}

// Open loads a model (HuggingFace folder or .gguf file) on the CPU.
func Open(path string) (*Engine, error) {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var p C.VllmEngineParams
	var h *C.VllmEngine
	err := call("vllm_engine_create", func() C.enum_VllmStatus {
		if s := C.vllm_engine_default_params(&p); s != C.VLLM_STATUS_OK {
			return s
		}
		p.device = C.VLLM_DEVICE_CPU
		return C.vllm_engine_create(cpath, &p, &h)
	})
	if err != nil {
		return nil, err
	}
	return &Engine{h: h}, nil
}

// Close aborts what is in flight, waits for the stream goroutines to end, and frees the
// engine. Safe to call twice and from several goroutines.
func (e *Engine) Close() {
	e.mu.RLock()
	h := e.h
	e.mu.RUnlock()
	if h == nil {
		return
	}
	// Wake the streams: destroying aborts their requests, but they must stop touching the
	// handle first, so abort through the engine and let them drain.
	e.mu.Lock()
	if e.h == nil {
		e.mu.Unlock()
		return
	}
	e.closing = true
	e.mu.Unlock()
	e.streams.Wait()
	e.mu.Lock()
	C.vllm_engine_destroy(e.h)
	e.h = nil
	e.mu.Unlock()
}

// cParams holds C memory for one submission; free releases it.
type cParams struct {
	p     C.VllmSamplingParams
	stops []*C.char
	arr   unsafe.Pointer
}

func (e *Engine) params(p Params) *cParams {
	c := &cParams{}
	C.vllm_sampling_default_params(&c.p)
	c.p.temperature = C.float(p.Temperature)
	if p.TopP > 0 {
		c.p.top_p = C.float(p.TopP)
	}
	if p.TopK != 0 {
		c.p.top_k = C.int32_t(p.TopK)
	}
	if p.MaxTokens > 0 {
		c.p.max_tokens = C.uint32_t(p.MaxTokens)
	}
	c.p.ignore_eos = C.bool(p.IgnoreEOS)
	if p.Seed != nil {
		c.p.use_seed = true
		c.p.seed = C.uint64_t(*p.Seed)
	}
	if len(p.Stop) > 0 {
		size := C.size_t(len(p.Stop)) * C.size_t(unsafe.Sizeof((*C.char)(nil)))
		c.arr = C.malloc(size)
		arr := unsafe.Slice((**C.char)(c.arr), len(p.Stop))
		for i, s := range p.Stop {
			arr[i] = C.CString(s)
			c.stops = append(c.stops, arr[i])
		}
		c.p.stop = (**C.char)(c.arr)
		c.p.num_stop = C.size_t(len(p.Stop))
	}
	return c
}

func (c *cParams) free() {
	for _, s := range c.stops {
		C.free(unsafe.Pointer(s))
	}
	if c.arr != nil {
		C.free(c.arr)
	}
}

func (e *Engine) submit(prompt string, p Params) (uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.h == nil || e.closing {
		return 0, errClosed
	}
	cp := e.params(p)
	defer cp.free()
	cprompt := C.CString(prompt)
	defer C.free(unsafe.Pointer(cprompt))
	var id C.uint64_t
	err := call("vllm_submit_text", func() C.enum_VllmStatus {
		return C.vllm_submit_text(e.h, cprompt, &cp.p, nil, nil, &id)
	})
	return uint64(id), err
}

// Stream submits prompt and returns a channel of its deltas, closed after the last one.
// Cancelling ctx (or closing the Engine) aborts the request: the goroutine stops sending,
// waits for the abort to land and closes the channel.
func (e *Engine) Stream(ctx context.Context, prompt string, p Params) (<-chan Delta, error) {
	e.streams.Add(1)
	id, err := e.submit(prompt, p)
	if err != nil {
		e.streams.Done()
		return nil, err
	}
	ch := make(chan Delta, 16)
	go func() {
		defer e.streams.Done()
		defer close(ch)
		aborted := false
		for {
			e.mu.RLock()
			closing := e.closing
			e.mu.RUnlock()
			if !aborted && (ctx.Err() != nil || closing) {
				_ = call("vllm_abort", func() C.enum_VllmStatus { return C.vllm_abort(e.h, C.uint64_t(id)) })
				aborted = true
			}
			var out *C.VllmOutput
			err := call("vllm_wait", func() C.enum_VllmStatus {
				return C.vllm_wait(e.h, C.uint64_t(id), 50, &out)
			})
			if err != nil {
				if ge, ok := err.(*Error); ok && ge.Status == StatusTimeout {
					continue
				}
				if !aborted {
					select {
					case ch <- Delta{Finished: true, FinishReason: FinishError, Err: err}:
					case <-ctx.Done():
					}
				}
				return
			}
			d := Delta{
				Text:         C.GoStringN(out.text, C.int(out.text_len)),
				Finished:     bool(out.finished),
				FinishReason: FinishReason(out.finish_reason),
			}
			if out.num_tokens > 0 {
				ids := unsafe.Slice((*uint32)(unsafe.Pointer(out.token_ids)), int(out.num_tokens))
				d.TokenIDs = append([]uint32(nil), ids...)
			}
			C.vllm_output_free(out)
			if !aborted {
				select {
				case ch <- d:
				case <-ctx.Done(): // the reader may be gone: abort on the next turn
				}
			}
			if d.Finished {
				return
			}
		}
	}()
	return ch, nil
}

// Generate returns the whole completion of prompt.
func (e *Engine) Generate(prompt string, p Params) (string, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.h == nil || e.closing {
		return "", errClosed
	}
	cp := e.params(p)
	defer cp.free()
	cprompt := C.CString(prompt)
	defer C.free(unsafe.Pointer(cprompt))
	var out *C.char
	err := call("vllm_generate", func() C.enum_VllmStatus {
		return C.vllm_generate(e.h, cprompt, &cp.p, &out)
	})
	if err != nil {
		return "", err
	}
	defer C.vllm_string_free(out)
	return C.GoString(out), nil
}

// KVBlocksUsed is the number of KV cache blocks held by live requests.
func (e *Engine) KVBlocksUsed() (uint64, error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.h == nil {
		return 0, errClosed
	}
	var s C.VllmStats
	err := call("vllm_engine_stats", func() C.enum_VllmStatus { return C.vllm_engine_stats(e.h, &s) })
	return uint64(s.kv_blocks_used), err
}
