"""Reads a folder of TensorBoard event files with TensorBoard's own reader and prints its scalars.

Usage: tensorboard_scalars.py LOGDIR  ->  JSON {"tag": [[step, value], ...], ...} on stdout.
EventAccumulator is what `tensorboard --logdir` loads a run with: it checks each record's masked
CRC-32C, parses the Event protos, and applies a restarted run's SessionLog START (purging the events
it replaces), so what it returns is what TensorBoard would chart. The test (test/e2e/dashboard.test.ts)
compares that with metrics.jsonl and eval.jsonl.
"""
import json
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def main() -> None:
    accumulator = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})  # 0: keep every point
    accumulator.Reload()
    scalars = {tag: [[e.step, e.value] for e in accumulator.Scalars(tag)] for tag in accumulator.Tags()["scalars"]}
    json.dump({"file_version": accumulator.file_version, "scalars": scalars}, sys.stdout)


if __name__ == "__main__":
    main()
