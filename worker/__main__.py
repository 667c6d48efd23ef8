"""`python -m worker [--burst] [--queues a,b]`: an RQ worker for training jobs."""

from worker.process import main

if __name__ == "__main__":
    raise SystemExit(main())
