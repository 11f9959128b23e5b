"""The launcher Lambda: turns events into queued jobs and starts just enough ECS workers."""
