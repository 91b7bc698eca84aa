"""The KFP pipelines (training, prediction), how they compile and run, the CLI and the benchmarks."""
