//! SamplingParams validation and the CPU sampler's behaviour.

use std::collections::HashMap;
use vllm_engine::sampling::{SamplerState, SamplingParams, sample};

const V: usize = 8;

fn valid(p: SamplingParams) -> vllm_engine::sampling::ValidSamplingParams {
    p.validate(V).unwrap()
}

#[test]
fn invalid_params_name_field_rule_and_value() {
    let cases: Vec<(SamplingParams, &str, &str)> = vec![
        (
            SamplingParams {
                n: 0,
                ..Default::default()
            },
            "n",
            "got 0",
        ),
        (
            SamplingParams {
                temperature: -0.5,
                ..Default::default()
            },
            "temperature",
            "got -0.5",
        ),
        (
            SamplingParams {
                temperature: f32::NAN,
                ..Default::default()
            },
            "temperature",
            "got NaN",
        ),
        (
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            "top_p",
            "(0, 1]",
        ),
        (
            SamplingParams {
                top_p: 1.5,
                ..Default::default()
            },
            "top_p",
            "got 1.5",
        ),
        (
            SamplingParams {
                top_k: -2,
                ..Default::default()
            },
            "top_k",
            "got -2",
        ),
        (
            SamplingParams {
                min_p: 1.1,
                ..Default::default()
            },
            "min_p",
            "[0, 1]",
        ),
        (
            SamplingParams {
                presence_penalty: 2.5,
                ..Default::default()
            },
            "presence_penalty",
            "[-2, 2]",
        ),
        (
            SamplingParams {
                frequency_penalty: -3.0,
                ..Default::default()
            },
            "frequency_penalty",
            "got -3",
        ),
        (
            SamplingParams {
                repetition_penalty: 0.0,
                ..Default::default()
            },
            "repetition_penalty",
            "> 0",
        ),
        (
            SamplingParams {
                max_tokens: Some(0),
                ..Default::default()
            },
            "max_tokens",
            ">= 1",
        ),
        (
            SamplingParams {
                min_tokens: 5,
                max_tokens: Some(4),
                ..Default::default()
            },
            "min_tokens",
            "5 (max_tokens 4)",
        ),
        (
            SamplingParams {
                logprobs: Some(21),
                ..Default::default()
            },
            "logprobs",
            "<= 20, got 21",
        ),
        (
            SamplingParams {
                prompt_logprobs: Some(99),
                ..Default::default()
            },
            "prompt_logprobs",
            "got 99",
        ),
        (
            SamplingParams {
                stop: vec![String::new()],
                ..Default::default()
            },
            "stop",
            "empty",
        ),
        (
            SamplingParams {
                stop_token_ids: vec![8],
                ..Default::default()
            },
            "stop_token_ids",
            "8 (vocab 8)",
        ),
        (
            SamplingParams {
                logit_bias: HashMap::from([(9, 1.0)]),
                ..Default::default()
            },
            "logit_bias",
            "9 (vocab 8)",
        ),
    ];
    for (p, field, needle) in cases {
        let e = p.validate(V).unwrap_err();
        assert_eq!(e.field, field);
        let msg = e.to_string();
        assert!(msg.contains(field) && msg.contains(needle), "{msg}");
    }
    assert!(SamplingParams::default().validate(V).is_ok());
    assert!(
        SamplingParams {
            top_k: -1,
            ..Default::default()
        }
        .validate(V)
        .is_ok()
    );
}

#[test]
fn logit_bias_is_clamped_like_vllm() {
    let p = valid(SamplingParams {
        logit_bias: HashMap::from([(1, 500.0), (2, -500.0)]),
        ..Default::default()
    });
    assert_eq!(p.logit_bias[&1], 100.0);
    assert_eq!(p.logit_bias[&2], -100.0);
}

#[test]
fn greedy_is_argmax_and_logprobs_are_raw_log_softmax() {
    let logits = [0.1f32, 2.0, -1.0, 3.5, 0.0, 1.0, -2.0, 0.5];
    let p = valid(SamplingParams {
        logprobs: Some(3),
        ..SamplingParams::greedy(4)
    });
    let s = sample(&logits, &p, &[], &[], &[], &mut SamplerState::new(Some(0)));
    assert_eq!(s.token, 3);
    let lse = logits.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
    assert!((s.logprob as f64 - (3.5 - lse)).abs() < 1e-5);
    let tops: Vec<u32> = s.top_logprobs.iter().map(|t| t.token).collect();
    assert_eq!(tops, vec![3, 1, 5]);
    assert!(
        s.top_logprobs
            .windows(2)
            .all(|w| w[0].logprob >= w[1].logprob)
    );
}

fn histogram(logits: &[f32], p: &SamplingParams, draws: usize, seed: u64) -> Vec<usize> {
    let p = valid(p.clone());
    let mut st = SamplerState::new(Some(seed));
    let mut h = vec![0; logits.len()];
    for _ in 0..draws {
        h[sample(logits, &p, &[], &[], &[], &mut st).token as usize] += 1;
    }
    h
}

#[test]
fn temperature_sampling_follows_softmax() {
    let logits = [1.0f32, 0.0, 2.0, -1.0, 0.5, 1.5, -0.5, 0.2];
    let t = 0.7f32;
    let n = 40_000;
    let h = histogram(
        &logits,
        &SamplingParams {
            temperature: t,
            ..Default::default()
        },
        n,
        7,
    );
    let z: f64 = logits.iter().map(|&x| ((x / t) as f64).exp()).sum();
    for (i, &c) in h.iter().enumerate() {
        let p = ((logits[i] / t) as f64).exp() / z;
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        assert!(
            (c as f64 - n as f64 * p).abs() < 5.0 * sd + 1.0,
            "token {i}: {c} draws, expected {:.0}",
            n as f64 * p
        );
    }
}

#[test]
fn top_k_top_p_min_p_restrict_the_support() {
    let logits = [3.0f32, 2.9, 2.8, 0.0, -1.0, -2.0, 1.0, 2.0];
    let h = histogram(
        &logits,
        &SamplingParams {
            top_k: 3,
            ..Default::default()
        },
        3000,
        1,
    );
    assert!(
        h[3..].iter().all(|&c| c == 0) && h[..3].iter().all(|&c| c > 0),
        "{h:?}"
    );
    // Probabilities ~ .30 .27 .25 .11 (token 7) ...: top_p 0.5 keeps tokens 0 and 1 only.
    let h = histogram(
        &logits,
        &SamplingParams {
            top_p: 0.5,
            ..Default::default()
        },
        3000,
        2,
    );
    assert!(
        h[0] > 0 && h[1] > 0 && h[2..].iter().all(|&c| c == 0),
        "{h:?}"
    );
    // min_p 0.5: keep tokens with p >= 0.5 * p_max, i.e. logit >= 3 - ln 2.
    let h = histogram(
        &logits,
        &SamplingParams {
            min_p: 0.5,
            ..Default::default()
        },
        3000,
        3,
    );
    assert!(
        h[..3].iter().all(|&c| c > 0) && h[3..].iter().all(|&c| c == 0),
        "{h:?}"
    );
}

#[test]
fn seeded_requests_reproduce_whatever_else_is_drawn() {
    let logits = [0.3f32, 0.1, 0.2, 0.0, 0.25, 0.15, 0.05, 0.3];
    let p = valid(SamplingParams {
        seed: Some(42),
        ..Default::default()
    });
    let run = |interleave: bool| {
        let mut st = SamplerState::new(p.seed);
        let mut other = SamplerState::new(Some(999));
        (0..50)
            .map(|_| {
                if interleave {
                    sample(&logits, &p, &[], &[], &[], &mut other);
                }
                sample(&logits, &p, &[], &[], &[], &mut st).token
            })
            .collect::<Vec<_>>()
    };
    let a = run(false);
    assert_eq!(a, run(true));
    assert!(
        a.iter().any(|&t| t != a[0]),
        "the draws are not all the same token"
    );
}

#[test]
fn penalties_bias_and_min_tokens() {
    let logits = [2.0f32, 1.9, -1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
    let g = |p: SamplingParams, prompt: &[u32], out: &[u32], eos: &[u32]| {
        sample(
            &logits,
            &valid(p),
            prompt,
            out,
            eos,
            &mut SamplerState::new(Some(0)),
        )
        .token
    };
    let greedy = SamplingParams::greedy(8);
    assert_eq!(g(greedy.clone(), &[], &[], &[]), 0);
    // Repetition penalty 1.1 on a prompt containing token 0: 2.0 / 1.1 < 1.9.
    assert_eq!(
        g(
            SamplingParams {
                repetition_penalty: 1.1,
                ..greedy.clone()
            },
            &[0],
            &[],
            &[]
        ),
        1
    );
    // Frequency penalty 0.06 twice over: 2.0 - 0.12 < 1.9; once: 1.94 > 1.9.
    assert_eq!(
        g(
            SamplingParams {
                frequency_penalty: 0.06,
                ..greedy.clone()
            },
            &[],
            &[0, 0],
            &[]
        ),
        1
    );
    assert_eq!(
        g(
            SamplingParams {
                frequency_penalty: 0.06,
                ..greedy.clone()
            },
            &[],
            &[0],
            &[]
        ),
        0
    );
    // Presence penalty counts once however many times.
    assert_eq!(
        g(
            SamplingParams {
                presence_penalty: 0.2,
                ..greedy.clone()
            },
            &[],
            &[0, 0, 0],
            &[]
        ),
        1
    );
    // Logit bias can force any token.
    let bias = SamplingParams {
        logit_bias: HashMap::from([(2, 5.0)]),
        ..greedy.clone()
    };
    assert_eq!(g(bias, &[], &[], &[]), 2);
    // min_tokens masks EOS (token 0 here) and stop tokens until enough tokens exist.
    let min = SamplingParams {
        min_tokens: 2,
        stop_token_ids: vec![1],
        ..greedy.clone()
    };
    assert_eq!(g(min.clone(), &[], &[5], &[0]), 3);
    assert_eq!(g(min.clone(), &[], &[5, 5], &[0]), 0);
    let ignore = SamplingParams {
        ignore_eos: true,
        ..min
    };
    assert_eq!(
        g(ignore, &[], &[5], &[0]),
        0,
        "ignore_eos leaves EOS unmasked"
    );
}

/// Which requests a device sampler may draw: temperature, min-p, top-k and top-p travel to the
/// device; bias, penalties, logprobs and an unmet `min_tokens` keep the row on the host.
#[test]
fn device_sampling_takes_top_k_and_top_p_only_without_host_only_parameters() {
    use vllm_engine::sampling::DeviceSampling;
    let p = valid(SamplingParams {
        temperature: 0.7,
        top_k: 40,
        top_p: 0.9,
        min_p: 0.05,
        ..Default::default()
    });
    assert_eq!(
        p.device_sampling(0),
        Some(DeviceSampling {
            temperature: 0.7,
            min_p: 0.05,
            top_k: 40,
            top_p: 0.9
        })
    );
    // top_k -1 (vLLM's "off") reaches the device as 0.
    let off = valid(SamplingParams {
        top_k: -1,
        ..Default::default()
    });
    assert_eq!(off.device_sampling(0).map(|d| d.top_k), Some(0));
    let host_only = [
        SamplingParams {
            logprobs: Some(2),
            ..Default::default()
        },
        SamplingParams {
            repetition_penalty: 1.1,
            ..Default::default()
        },
        SamplingParams {
            presence_penalty: 0.5,
            ..Default::default()
        },
        SamplingParams {
            logit_bias: [(3u32, 1.0f32)].into_iter().collect(),
            ..Default::default()
        },
    ];
    for params in host_only {
        assert_eq!(valid(params.clone()).device_sampling(0), None, "{params:?}");
    }
    let min_tokens = valid(SamplingParams {
        min_tokens: 3,
        ..Default::default()
    });
    assert_eq!(min_tokens.device_sampling(2), None);
    assert!(min_tokens.device_sampling(3).is_some());
}
