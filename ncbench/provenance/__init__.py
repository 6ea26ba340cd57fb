"""Where a number came from and what it depends on: the run's provenance record (`record`), the
machine (`machine`), the CPU thread policy (`threads`) and file digests (`digests`)."""
