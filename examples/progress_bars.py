"""Progress bars for a long job: one over the job's tasks on the driver
(`redray.util.progress`), and one per task drawn on the driver from inside the tasks
(`redray.experimental.tqdm_ray`). Takes a few seconds: `python examples/progress_bars.py`.
"""

import time

import redray as ray
import redray.util
from redray.experimental import tqdm_ray

ray.init()


@ray.remote
def simulate(seed: int, steps: int) -> float:
    """A slow simulation: each task shows its own bar on the driver."""
    total = 0.0
    for step in tqdm_ray.tqdm(range(steps), desc=f"simulation {seed}"):
        total += (seed * 31 + step) % 7
        time.sleep(0.01)
    return total / steps


@ray.remote
def score(x: int) -> int:
    time.sleep(0.05)
    return x * x


# A bar over many short tasks, advancing as results complete (in any order).
refs = [score.remote(i) for i in range(100)]
best = max(redray.util.progress(refs, desc="scoring"))
print(f"best score: {best}")

# Bars updated inside a few long tasks.
with redray.util.progress([simulate.remote(seed, 200) for seed in range(4)], desc="all") as bar:
    means = bar.get()
print("means:", [round(mean, 2) for mean in means])
ray.shutdown()
