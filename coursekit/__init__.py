"""coursekit: the helper package of the course book *Generative Models*.

Every chapter notebook imports it; it is the single, tested source of the
reusable code (samplers, models, training loops, plots).  Modules are named
after the topic a student would look for:

- :mod:`coursekit.utils`: seeding, device choice, progress bars, a shared training loop;
- :mod:`coursekit.validation`: the input checks and the ``rng`` / ``generator`` conventions;
- :mod:`coursekit.numerics`: log-sum-exp, log(2 pi), stable distances, N(0, I) log-density;
- :mod:`coursekit.baselines`: the independent-pixel baseline every image model must beat;
- :mod:`coursekit.data`: the 2-D toy distributions and the 8x8 digits;
- :mod:`coursekit.plot`: the book's figures (``plot.use_style()`` gives the book's look).

Topic modules (``sampling``, ``gmm``, ``divergences``, ``autoregressive``,
``language_model``, ``flows``, ``ebm``, ``vae``, ...) are imported on demand:
``from coursekit import gmm``. The conventions every module follows are in CONTRIBUTING.md.
"""

from coursekit.utils import get_device, progress, seed_everything, train

__version__ = "0.1.0"

__all__ = ["__version__", "get_device", "progress", "seed_everything", "train"]
