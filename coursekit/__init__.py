"""coursekit: the helper package of the course book *Generative Models*.

Every chapter notebook imports it; it is the single, tested source of the
reusable code (samplers, models, training loops, plots).  Modules are named
after the topic a student would look for:

- :mod:`coursekit.seeding`: ``seed_everything`` and the ``COURSEKIT_SEED`` knob that moves every seed;
- :mod:`coursekit.utils`: device choice, progress bars, a shared training loop;
- :mod:`coursekit.validation`: the input checks and the ``rng`` / ``generator`` conventions;
- :mod:`coursekit.numerics`: log-sum-exp, log(2 pi), stable distances, N(0, I) log-density;
- :mod:`coursekit.baselines`: the independent-pixel baseline every image model must beat;
- :mod:`coursekit.data`: the 2-D toy distributions and the 8x8 digits;
- :mod:`coursekit.plot`: the book's figures (``plot.use_style()`` gives the book's look).

Topic modules are imported on demand (``from coursekit import gmm``):

- Lecture 1: ``sampling``, ``gmm``, ``divergences``, ``transport`` (1-D Monge map, stochastic
  linear transport), ``autoregressive``, ``language_model``, ``tokenizer`` (byte-pair
  encoding), ``normalizing_flows``, ``ebm``, ``mcmc`` (MALA, HMC, effective sample size), ``vae``;
- Lecture 2: ``gan``; Lecture 3: ``diffusion``; Lecture 4: ``metrics``;
- the practicals' check cells: the subpackage ``practicals`` (one module per practical,
  named like its notebook);
- the course project: ``project`` (the shared generator, evaluation, leaderboard).

The conventions every module follows are in CONTRIBUTING.md.
"""

from coursekit.seeding import seed_everything
from coursekit.utils import get_device, progress, train

__version__ = "0.3.0"

__all__ = ["__version__", "get_device", "progress", "seed_everything", "train"]
