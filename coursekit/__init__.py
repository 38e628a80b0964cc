"""coursekit: the helper package of the course book *Generative Models*.

Every chapter notebook imports it; it is the single, tested source of the
reusable code (samplers, models, training loops, plots).  Modules are named
after the topic a student would look for:

- :mod:`coursekit.utils`: seeding, device choice, progress bars, a shared training loop;
- :mod:`coursekit.validation`: the input checks behind every public function;
- :mod:`coursekit.data`: the 2-D toy distributions and the 8x8 digits;
- :mod:`coursekit.plot`: the book's figures (one look for the whole book).

Topic modules (``sampling``, ``gmm``, ``divergences``, ``autoregressive``,
``flows``, ``ebm``, ``vae``, ``handout``, ``practical_checks``) are imported on demand:
``from coursekit import gmm``.
"""

from coursekit.utils import get_device, progress, seed_everything, train

__version__ = "0.1.0"

__all__ = ["__version__", "get_device", "progress", "seed_everything", "train"]
