"""What a trained model is: features, estimator families, blend, calibration, metrics, SHAP, the bundle."""
