"""Shared, I/O-free protocol pieces: the DCF wire codec, message schemas,
validation, chunking, authentication, configuration and logging setup."""
