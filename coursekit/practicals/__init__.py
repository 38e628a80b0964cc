"""The practicals' check cells: one module per practical, named like its notebook.

- :mod:`~coursekit.practicals.practical1_vae`: Practical 1, building and training a VAE;
- :mod:`~coursekit.practicals.practical2_gan`: Practical 2, training a GAN;
- :mod:`~coursekit.practicals.practical3_ode_sde`: Practical 3, ODE and SDE samplers;
- :mod:`~coursekit.practicals.checks`: what the three share (how a check fails, passes, calls
  the student's function and turns a torch error into a hint).

A notebook imports its module as ``checks`` and passes each exercise's function to its check:
``from coursekit.practicals import practical2_gan as checks`` then
``checks.check_train_step(train_step)``.
"""
