//! config.json of the supported architectures (fields as the published models have them), and
//! errors naming file and field.

use vllm_engine::config::{Architecture, ConfigError, ModelConfig, RopeScaling};

const LLAMA31_8B: &str = r#"{"architectures":["LlamaForCausalLM"],"attention_bias":false,"bos_token_id":128000,
 "eos_token_id":[128001,128008,128009],"hidden_act":"silu","hidden_size":4096,"intermediate_size":14336,
 "max_position_embeddings":131072,"model_type":"llama","num_attention_heads":32,"num_hidden_layers":32,
 "num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_scaling":{"factor":8.0,"low_freq_factor":1.0,
 "high_freq_factor":4.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},"rope_theta":500000.0,
 "tie_word_embeddings":false,"torch_dtype":"bfloat16","vocab_size":128256}"#;

const QWEN3_06B: &str = r#"{"architectures":["Qwen3ForCausalLM"],"attention_bias":false,"bos_token_id":151643,
 "eos_token_id":151645,"head_dim":128,"hidden_size":1024,"intermediate_size":3072,"max_position_embeddings":40960,
 "max_window_layers":28,"num_attention_heads":16,"num_hidden_layers":28,"num_key_value_heads":8,"rms_norm_eps":1e-06,
 "rope_scaling":null,"rope_theta":1000000,"sliding_window":null,"tie_word_embeddings":true,"use_sliding_window":false,
 "vocab_size":151936}"#;

const MISTRAL_7B: &str = r#"{"architectures":["MistralForCausalLM"],"bos_token_id":1,"eos_token_id":2,"hidden_size":4096,
 "intermediate_size":14336,"max_position_embeddings":32768,"num_attention_heads":32,"num_hidden_layers":32,
 "num_key_value_heads":8,"rms_norm_eps":1e-05,"rope_theta":10000.0,"sliding_window":4096,"tie_word_embeddings":false,
 "vocab_size":32000}"#;

const QWEN2_05B: &str = r#"{"architectures":["Qwen2ForCausalLM"],"bos_token_id":151643,"eos_token_id":151643,"hidden_size":896,
 "intermediate_size":4864,"max_position_embeddings":131072,"num_attention_heads":14,"num_hidden_layers":24,
 "num_key_value_heads":2,"rms_norm_eps":1e-06,"rope_theta":1000000.0,"sliding_window":131072,"tie_word_embeddings":true,
 "use_sliding_window":false,"vocab_size":151936}"#;

#[test]
fn published_configs_parse_with_their_switches() {
    let l = ModelConfig::from_json(LLAMA31_8B, "llama/config.json").unwrap();
    assert_eq!(l.architecture, Architecture::Llama);
    assert_eq!(
        (l.head_dim, l.num_key_value_heads, l.eos_token_ids.len()),
        (128, 8, 3)
    );
    assert_eq!(
        l.rope_scaling,
        Some(RopeScaling::Llama3 {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192
        })
    );
    assert!(!l.qkv_bias && !l.qk_norm && !l.tie_word_embeddings && l.sliding_window.is_none());

    let q3 = ModelConfig::from_json(QWEN3_06B, "qwen3/config.json").unwrap();
    assert_eq!(q3.architecture, Architecture::Qwen3);
    assert_eq!(
        q3.head_dim, 128,
        "head_dim given explicitly (16 heads x 128 != hidden 1024)"
    );
    assert!(q3.qk_norm && !q3.qkv_bias && q3.tie_word_embeddings && q3.rope_scaling.is_none());
    assert_eq!(q3.eos_token_ids, vec![151645]);

    let m = ModelConfig::from_json(MISTRAL_7B, "mistral/config.json").unwrap();
    assert_eq!(m.sliding_window, Some(4096));
    let zero = MISTRAL_7B.replace("\"sliding_window\":4096", "\"sliding_window\":0");
    let m0 = ModelConfig::from_json(&zero, "mistral/config.json").unwrap();
    assert_eq!(
        m0.sliding_window, None,
        "a window of 0 is no window (CPU and GPU alike)"
    );

    let q2 = ModelConfig::from_json(QWEN2_05B, "qwen2/config.json").unwrap();
    assert!(q2.qkv_bias, "Qwen2 always has q/k/v bias");
    assert_eq!(q2.sliding_window, None, "use_sliding_window is false");
    assert_eq!(q2.head_dim, 64);
}

#[test]
fn errors_name_the_file_and_the_field() {
    let e = ModelConfig::from_json(
        &LLAMA31_8B.replace("LlamaForCausalLM", "GPT2LMHeadModel"),
        "a/config.json",
    )
    .unwrap_err();
    assert!(matches!(e, ConfigError::UnsupportedArchitecture { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("a/config.json")
            && msg.contains("GPT2LMHeadModel")
            && msg.contains("Qwen3ForCausalLM"),
        "{msg}"
    );

    let e = ModelConfig::from_json(
        &MISTRAL_7B.replace("\"hidden_size\":4096,", ""),
        "m/config.json",
    )
    .unwrap_err();
    assert_eq!(e.to_string(), "m/config.json: missing field `hidden_size`");

    let e = ModelConfig::from_json(
        &MISTRAL_7B.replace("\"num_key_value_heads\":8", "\"num_key_value_heads\":5"),
        "m",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("`num_key_value_heads` 5 does not divide num_attention_heads 32"),
        "{e}"
    );

    let e = ModelConfig::from_json(&LLAMA31_8B.replace("\"llama3\"", "\"yarn\""), "l").unwrap_err();
    assert!(e.to_string().contains("\"yarn\" is not supported"), "{e}");

    let e = ModelConfig::from_json("{\"architectures\": [", "broken.json").unwrap_err();
    assert!(
        matches!(e, ConfigError::Json { .. })
            && e.to_string().starts_with("broken.json: not valid JSON"),
        "{e}"
    );

    let e = ModelConfig::from_file(std::path::Path::new("/nonexistent/config.json")).unwrap_err();
    assert!(
        matches!(e, ConfigError::Io { .. })
            && e.to_string().starts_with("/nonexistent/config.json"),
        "{e}"
    );

    let e = ModelConfig::from_json(
        &MISTRAL_7B.replace("\"vocab_size\":32000", "\"vocab_size\":0"),
        "m",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("`vocab_size` must be > 0, got 0"),
        "{e}"
    );
}
