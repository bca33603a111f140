"""Training on Kubernetes, below the pipeline layer: the command lines that start `adautomix train`
under torch's launcher (launch), the jobs that run it on several nodes through Kubeflow Trainer's
TrainJob (trainjob) or the training operator's PyTorchJob (pytorchjob), what both share, from the
nodes' pod settings to the job's life through the Kubernetes API (job), and which of the two a
step uses (multinode). Only this sub-package imports the Kubernetes client, and only inside the
functions that use it; nothing here imports torch."""
