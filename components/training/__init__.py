"""The training stages between a validated table and a gated challenger: split, tune, select, gate."""
