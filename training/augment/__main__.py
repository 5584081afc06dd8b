"""``python -m training.augment``: see :mod:`training.augment.generate`."""

from training.augment.generate import main

main()
