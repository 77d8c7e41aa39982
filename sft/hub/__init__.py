"""TF Hub-format BERT: the encoder and preprocessor modules, their export, and handle resolution."""
