"""The arguments the component tests give the train step: its run and what the pipeline says of
itself."""

# The run the train step is given (its `config` parameter; the dataset is the data step's).
TRAINING = dict(
    model="resnet18",
    model_width=8,
    method="mixup",
    epochs=1,
    batch_size=10,
    lr=0.05,
    seed=0,
    val_size=10,
)
# What the pipeline passes the train step about itself (kfp fills in the run's id and name).
PIPELINE_RUN = dict(
    pipeline_name="adautomix-training",
    pipeline_run_id="run-0123",
    pipeline_run_name="adautomix-training-20261201",
)
