"""SID quantizers behind one interface (``Quantizer``): the tokenizer ablation is a name switch."""

from recbole_llada.sid.quantizers.base import FitReport, Quantizer, count_collisions
from recbole_llada.sid.quantizers.kmeans import KMeansResult, kmeans
from recbole_llada.sid.quantizers.mh_vqvae import MultiHeadVQVAEQuantizer
from recbole_llada.sid.quantizers.opq import OPQQuantizer
from recbole_llada.sid.quantizers.rq_kmeans import KMeansQuantizerConfig, ResidualKMeansQuantizer
from recbole_llada.sid.quantizers.rq_vae import ResidualVQVAEQuantizer
from recbole_llada.sid.quantizers.vae import VAEConfig

__all__ = [
    "FitReport", "KMeansQuantizerConfig", "KMeansResult", "MultiHeadVQVAEQuantizer", "OPQQuantizer", "Quantizer",
    "ResidualKMeansQuantizer", "ResidualVQVAEQuantizer", "VAEConfig", "count_collisions", "kmeans",
]
