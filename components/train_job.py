"""The train step on several nodes: the train component's function (components/train.py) with
job options, as a component that receives its task's settings as a dsl.TaskConfig. A Kubeflow
Trainer TrainJob, or the older training operator's PyTorchJob (`job_options["trainer"]`),
trains; this step waits for it.

The pipeline gives this task the workspace volume, secrets, node selector and tolerations of the
single-pod train step; Kubeflow Pipelines passes them through to the step as a dsl.TaskConfig
(task_config_passthroughs), and the step writes them into the job's nodes. The step's own pod
takes only the volume (to read the finished checkpoint), the environment and a small CPU and
memory request: its node selector and tolerations go to the nodes alone, and the nodes' GPUs
(`num_gpus` each), CPU, memory, /dev/shm, pull secrets, labels, annotations, grace period and
deadline come from `job_options`, which pipeline/cluster_tasks.py builds at compile time. The
output is the same as the single-pod step's: the final config.json and checkpoint.pt as the
`checkpoint` artifact, with the MLflow run id and the final metrics (and the job's name, under
the trainer's), for evaluate and register.

Its component is named after the function, `train`, as the single-pod one is: in a compiled
pipeline the step is `train` either way, and its task config passthroughs tell the two apart."""

from kfp import dsl

from components import BASE_IMAGE
from components.train import train

# The waiting pod's own small CPU and memory apply to it; the job options' replace them for the
# nodes (adautomix/cluster/job.py node_resources).
PASSTHROUGHS = [
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.RESOURCES, apply_to_task=True),
    dsl.TaskConfigField.KUBERNETES_TOLERATIONS,
    dsl.TaskConfigField.KUBERNETES_NODE_SELECTOR,
    dsl.TaskConfigField.KUBERNETES_AFFINITY,
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.ENV, apply_to_task=True),
    dsl.TaskConfigPassthrough(field=dsl.TaskConfigField.KUBERNETES_VOLUMES, apply_to_task=True),
]

train_job = dsl.component(
    base_image=BASE_IMAGE, install_kfp_package=False, task_config_passthroughs=PASSTHROUGHS
)(train.python_func)
