"""Evaluation: ActionBench's CD-3D / CD-4D / CD-M as the release computes them (``metrics``), and the
``evaluate`` command over a folder of predictions (``actionbench``)."""
