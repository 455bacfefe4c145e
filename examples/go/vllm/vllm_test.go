package vllm

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
)

func open(t *testing.T) *Engine {
	t.Helper()
	path := os.Getenv("VLLM_TEST_MODEL")
	if path == "" {
		t.Fatal("VLLM_TEST_MODEL must name a model (tests/clients/run.sh sets it)")
	}
	e, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func collect(t *testing.T, ch <-chan Delta) (string, Delta) {
	t.Helper()
	var b strings.Builder
	var last Delta
	for d := range ch {
		if d.Err != nil {
			t.Fatal(d.Err)
		}
		b.WriteString(d.Text)
		last = d
	}
	return b.String(), last
}

func TestStreamEqualsGenerate(t *testing.T) {
	e := open(t)
	defer e.Close()
	p := Params{MaxTokens: 24, IgnoreEOS: true}
	want, err := e.Generate("Hello world!", p)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := e.Stream(context.Background(), "Hello world!", p)
	if err != nil {
		t.Fatal(err)
	}
	got, last := collect(t, ch)
	if got != want || last.FinishReason != FinishLength {
		t.Fatalf("stream %q (%v) vs generate %q", got, last.FinishReason, want)
	}
}

func TestCancelAborts(t *testing.T) {
	e := open(t)
	defer e.Close()
	ctx, cancel := context.WithCancel(context.Background())
	ch, err := e.Stream(ctx, "Hello world!", Params{MaxTokens: 250, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	first := <-ch
	if first.Finished {
		t.Fatal("finished after one delta")
	}
	cancel()
	tokens := len(first.TokenIDs)
	for d := range ch { // closes once the abort has landed
		tokens += len(d.TokenIDs)
	}
	if tokens >= 250 {
		t.Fatalf("cancel did not cut the request short: %d tokens", tokens)
	}
	used, err := e.KVBlocksUsed()
	if err != nil || used != 0 {
		t.Fatalf("blocks used after abort: %d (%v)", used, err)
	}
}

func TestCloseWithStreamsInFlight(t *testing.T) {
	e := open(t)
	chs := []<-chan Delta{}
	for i := 0; i < 4; i++ {
		ch, err := e.Stream(context.Background(), "Hello world!", Params{MaxTokens: 250, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		chs = append(chs, ch)
	}
	done := make(chan struct{})
	go func() {
		for _, ch := range chs {
			for range ch {
			}
		}
		close(done)
	}()
	e.Close()
	e.Close() // twice is fine
	<-done
	if _, err := e.Generate("x", Params{}); err == nil {
		t.Fatal("Generate after Close must fail")
	}
}

func TestErrorsAreTyped(t *testing.T) {
	_, err := Open("/no/such/model")
	var ve *Error
	if !errors.As(err, &ve) || ve.Status != StatusLoadFailed {
		t.Fatalf("missing model: %v", err)
	}
	e := open(t)
	defer e.Close()
	_, err = e.Generate("x", Params{TopP: 1.5})
	if !errors.As(err, &ve) || ve.Status != StatusInvalidArgument || !strings.Contains(ve.Message, "top_p") {
		t.Fatalf("top_p 1.5: %v", err)
	}
}

func TestConcurrentStreams(t *testing.T) {
	e := open(t)
	defer e.Close()
	p := Params{MaxTokens: 16, IgnoreEOS: true}
	want, err := e.Generate("Hello world!", p)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan string, 8)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := e.Stream(context.Background(), "Hello world!", p)
			if err != nil {
				errs <- err.Error()
				return
			}
			var b strings.Builder
			for d := range ch {
				if d.Err != nil {
					errs <- d.Err.Error()
					return
				}
				b.WriteString(d.Text)
			}
			if b.String() != want {
				errs <- b.String()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for m := range errs {
		t.Errorf("concurrent stream differs: %s", m)
	}
}
