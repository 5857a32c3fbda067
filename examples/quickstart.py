"""Tasks, objects and wait on an embedded cluster: `python examples/quickstart.py`."""

import time

import redray as ray


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote(num_returns=2)
def divmod_task(a: int, b: int) -> tuple[int, int]:
    return divmod(a, b)


@ray.remote
def slow(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def main() -> None:
    started = time.perf_counter()
    ray.init()
    print(f"cluster up in {time.perf_counter() - started:.2f} s: {ray.cluster_resources()}")

    print("squares:", ray.get([square.remote(i) for i in range(10)]))

    quotient, remainder = divmod_task.remote(17, 5)
    print("divmod(17, 5):", ray.get(quotient), ray.get(remainder))

    data = ray.put(list(range(1000)))
    print("sum of a put list, squared:", ray.get(square.remote(ray.get(data)[-1])))

    pending = [slow.remote(s) for s in (0.3, 0.1, 0.2)]
    while pending:
        done, pending = ray.wait(pending, num_returns=1)
        print("finished:", ray.get(done[0]))

    ray.shutdown()


if __name__ == "__main__":
    main()
