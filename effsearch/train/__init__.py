"""Training under DistributedDataParallel: the training function, schedules and the worker pool."""
