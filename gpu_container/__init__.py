"""ReconFlow's GPU container: the reconstruction engine and the stage runner around it."""
