"""The shared rate limiter: exact sliding windows in one Ray deployment, or in Redis."""
