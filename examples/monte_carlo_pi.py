"""Monte Carlo estimation of π with tasks and an actor (Ray's Tasks guide, on redray).

Sampling tasks run in parallel and report their progress to an actor, whose handle they
receive as an argument; the driver polls the actor while they run. Sized to take about ten
seconds on two cores: `python examples/monte_carlo_pi.py`.
"""

import math
import random
import time

import redray as ray

ray.init()


# Define an actor that tracks progress
@ray.remote
class ProgressActor:
    def __init__(self, total_num_samples: int):
        self.total_num_samples = total_num_samples
        self.num_samples_completed_per_task = {}

    def report_progress(self, task_id: int, num_samples_completed: int) -> None:
        self.num_samples_completed_per_task[task_id] = num_samples_completed

    def get_progress(self) -> float:
        return sum(self.num_samples_completed_per_task.values()) / self.total_num_samples


# Define a task that does the sampling
@ray.remote
def sampling_task(num_samples: int, task_id: int, progress_actor: "ray.actor.ActorHandle") -> int:
    num_inside = 0
    for i in range(num_samples):
        x, y = random.uniform(-1, 1), random.uniform(-1, 1)
        if math.hypot(x, y) <= 1:
            num_inside += 1
        # Report progress every REPORT_EVERY samples.
        if (i + 1) % REPORT_EVERY == 0:
            progress_actor.report_progress.remote(task_id, i + 1)
    # Report the final progress.
    progress_actor.report_progress.remote(task_id, num_samples)
    return num_inside


# Configuration (Ray's guide uses 10 tasks of 10,000,000 samples)
NUM_SAMPLING_TASKS = 10
NUM_SAMPLES_PER_TASK = 3_000_000
REPORT_EVERY = 250_000
TOTAL_NUM_SAMPLES = NUM_SAMPLING_TASKS * NUM_SAMPLES_PER_TASK

start = time.monotonic()
# Create the progress actor
progress_actor = ProgressActor.remote(TOTAL_NUM_SAMPLES)

# Create and execute all sampling tasks in parallel
results = [
    sampling_task.remote(NUM_SAMPLES_PER_TASK, i, progress_actor)
    for i in range(NUM_SAMPLING_TASKS)
]

# Query progress periodically
while True:
    progress = ray.get(progress_actor.get_progress.remote())
    print(f"Progress: {int(progress * 100)}%", flush=True)
    if progress == 1:
        break
    time.sleep(1)

# Get all the sampling tasks results and calculate π
total_num_inside = sum(ray.get(results))
pi = (total_num_inside * 4) / TOTAL_NUM_SAMPLES
print(f"Estimated value of π is: {pi} ({time.monotonic() - start:.1f} s)")
ray.shutdown()
