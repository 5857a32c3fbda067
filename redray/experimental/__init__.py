"""Ray's `ray.experimental` names that redray has: `tqdm_ray`, a progress bar for tasks."""
