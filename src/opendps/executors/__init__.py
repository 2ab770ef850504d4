"""Executors dispatch claimed jobs to ``runner.run_job``; they hold no job state."""
