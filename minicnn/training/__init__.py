"""The Fashion-MNIST application built on the library: data, the model registry, the training
loop, checkpoints, figures and the ``minicnn`` command line.

Nothing below this package imports it: the library (``functional``, ``nn``, ``optim``,
``testing``) works without the app, and tqdm and matplotlib are needed only here.
"""
