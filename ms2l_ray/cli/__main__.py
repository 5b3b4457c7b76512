"""``python -m ms2l_ray.cli …``: the ``ms2l`` command, for machines where the console script is not on PATH."""

from ms2l_ray.cli.main import main

raise SystemExit(main())
