"""Named training recipes as data: `<name>.yaml`, each a flat mapping of `Recipe` fields (`ncbench.training.recipe`)."""
