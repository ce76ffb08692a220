"""Ray Data pipelines: corpus encoding into resumable embedding shards."""
