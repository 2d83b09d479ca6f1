"""Simulated GPUs, for the fake autoscaler's nodes (testbed/cluster.py), whose GPUs are claims with
no device behind them: a trial Ray gives such a GPU runs on the CPU and says so, where the sweep
itself (sweep.trainable.task_device) refuses a GPU torch cannot see.

Python imports this file at startup from the nodes' PYTHONPATH (a `sitecustomize`). It changes
nothing until a process imports sweep.trainable, and then only that module's task_device.
"""

import importlib.machinery
import sys

TARGET = "sweep.trainable"


def cpu_for_claimed_gpus(module) -> None:
    """Wrap ``module.task_device``: a GPU Ray assigned that torch cannot see is a simulated one."""
    strict = module.task_device

    def task_device():
        import ray
        import torch

        if (gpus := ray.get_gpu_ids()) and not torch.cuda.is_available():
            print(f"Ray gave this task GPU {gpus}, a simulated one: running on the CPU", flush=True)
            return torch.device("cpu")
        return strict()

    module.task_device = task_device


class PatchOnImport:
    """A meta-path finder: TARGET found by the usual finders, patched once it has run."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            cpu_for_claimed_gpus(module)

        spec.loader.exec_module = exec_module
        return spec


sys.meta_path.insert(0, PatchOnImport())
