"""The runner: a suite's tasks expanded, checked before any work (`preflight`), run inline or as
parallel jobs (`suite_jobs`, `jobs`, `launcher`, `transfer_ranking`'s `zoo_jobs`), results written atomically."""
