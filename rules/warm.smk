# Warm start of local runs (config warm_start; vislaw/warm.py, docs/performance.md): one
# process imports the heavy stack once and every job's script runs in a fork of it.
from snakemake.settings.types import DeploymentMethod

from vislaw import warm
from vislaw.jobs import run_environment

WARM_SERVER = []


def start_warm_server():
    """Start the server for this run's jobs when the config asks for it and jobs run here, in
    this interpreter (not on a cluster, not in conda envs), and not for a run whose jobs may use
    CUDA (device cuda, or auto on a machine with a GPU driver): those run themselves anyway.
    """
    in_conda = DeploymentMethod.CONDA in workflow.deployment_settings.deployment_method
    cuda = warm.may_use_cuda(config["device"], 0)
    if config["warm_start"] and workflow.local_exec and not in_conda and not cuda:
        os.environ.update(run_environment(config))  # what jobs set before importing
        WARM_SERVER.append(warm.start(log=LAYOUT.log("warm_start")))


def stop_warm_server():
    for server in WARM_SERVER:
        warm.stop(server)


onstart:
    write_checked_config()  # rules/common.smk
    start_warm_server()


onsuccess:
    stop_warm_server()


onerror:
    stop_warm_server()
