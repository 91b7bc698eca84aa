"""propensity's building blocks, one package per subsystem (see the README's Layout)."""
