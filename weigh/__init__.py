"""The streaming control loop: `svcpulse weigh` workers, the feed reader of the API, the lease (docs/weights.md)."""
