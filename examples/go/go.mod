module vllm-rs.example/go

go 1.19
