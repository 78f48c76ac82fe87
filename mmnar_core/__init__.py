"""mmnar_core: multimodal clinical risk prediction under modality missingness not at random.

The library behind the MMNAR clinical risk explorer. Data flows one way: sources (synthetic simulator,
real-format loaders) -> one canonical dataset format -> encoders -> MMNAR model -> rectifier ->
predictions -> explanations.
"""

__version__ = "0.1.0"
