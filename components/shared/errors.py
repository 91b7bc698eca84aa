"""Errors that name what is wrong with the user's input, so the CLI can print them as they are."""


class DataValidationError(ValueError):
    """The input data cannot be used; the message names the file, column or value."""


class BundleError(ValueError):
    """A model bundle is missing, corrupted or incompatible; the message names the file."""


class RegistryError(ValueError):
    """A registry operation cannot be done (unknown model, version or alias)."""


class IdenticalVersionError(RegistryError):
    """The bundle would compute exactly what the champion computes: registering it changes nothing."""
