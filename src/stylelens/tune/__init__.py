"""The catalog-taught head (stylelens tune): training, calibration and its status."""
