#!/usr/bin/env python3
"""A variational autoencoder (VAE) on MNIST.

The encoder maps an image x to the mean and standard deviation of a diagonal Gaussian
Q(z|x); a latent code z is sampled from it with the reparametrization trick, and the decoder
maps z to the Bernoulli logits of the 28x28 pixels of P(x|z). Training minimises the negative
evidence lower bound, per image:

    -ELBO(x) = E_Q[-log P(x|z)] + KL(Q(z|x) || N(0, I))
             = reconstruction loss (a sum over the 784 pixels) + latent loss (a sum over z).

Pixel intensities x/255 in [0, 1] are the Bernoulli targets.

Run it, e.g. `python vae.py --z_dim 2 --epochs 5`: it prints the losses of every epoch and of
the test set, and saves images of samples from the prior (and, with --z_dim 2, of the latent
manifold).

How it is graded (written from the grader's spec, grader/assignments/vae.py):
    Unit checks, 1 point each, each naming the function it checks: build_encoder (mean and a
    positive sd of Q(z|x)), build_decoder (one logit per pixel, any real number), sample_z
    (z = mean + sd * epsilon, gradients reach mean and sd), latent_loss (the analytic KL,
    summed over z), reconstruction_loss (the Bernoulli -log P(x|z), summed over the pixels),
    and VAE.train_step (one epoch of train() on 2000 training images, with --epochs 1, must
    lower the -ELBO the grader measures on them and change both the encoder's and the
    decoder's weights). Then 2 trainings, 3 points each: z_dim 2 and z_dim 100, each a
    VAE(args) of your parse_args defaults (the grader passes --z_dim and --seed) trained by
    train() in a new process that gets only the 55,000 training images. The trained encoder
    and decoder leave that process as their Keras configs and weights (to_json(),
    get_weights(): built-in layers only, finite floats, at most 128 MiB) and are rebuilt by
    the grader's own code, which must reproduce your encode/decode answers on 64 secret
    training images: the rebuilt encoder encodes the 10,000 test images, the rebuilt
    decoder, in another process, decodes latent codes the grader samples from Q(z|x) with
    its own secret noise and never sees a test image. The grader computes the test -ELBO,
    reconstruction (one z per image) + analytic KL, in nats per image (and, for information,
    an importance-weighted -log p(x) with 10 samples), which must be at most 150 for z_dim 2
    and 107 for z_dim 100 (the reference solution: 144.3 and 103; seeds move it by about 1
    nat). Limits: 600 CPU seconds per training run, 120 CPU seconds for any other question
    (and at most 3 times as many seconds of wall-clock time), 6 GiB of memory, 2 compute
    thread(s), and a file of at most 128 KiB. A grading takes about 3.5 minutes on 2 idle
    cores (longer on a busy machine).
"""
import argparse
import os
import sys

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp


def parse_args(argv=None):
    def sizes(text):
        return [int(size) for size in text.split(",") if size]

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch_size", default=100, type=int, help="Batch size.")
    parser.add_argument("--decoder_layers", default="500,500", type=sizes, help="Decoder hidden layer sizes.")
    parser.add_argument("--encoder_layers", default="500,500", type=sizes, help="Encoder hidden layer sizes.")
    parser.add_argument("--epochs", default=10, type=int, help="Number of epochs.")
    parser.add_argument("--learning_rate", default=0.001, type=float, help="Adam learning rate.")
    parser.add_argument("--seed", default=42, type=int, help="Random seed.")
    parser.add_argument("--z_dim", default=100, type=int, help="Dimension of the latent space.")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"], help="Dataset.")
    parser.add_argument("--train_size", default=None, type=int, help="Limit the training images.")
    parser.add_argument("--plots", default="vae_plots", type=str, help="Folder for the images.")
    return parser.parse_args(argv)


H, W, C = 28, 28, 1


def sample_z(mean, sd):
    """A latent code z ~ N(mean, sd^2) for each row of `mean` and `sd` [B, z_dim], drawn so that
    gradients flow back to mean and sd (the reparametrization trick)."""
    # TODO: z = mean + sd * epsilon with epsilon ~ N(0, I); the samples of a
    # `tfp.distributions.Normal` are drawn this way.
    raise NotImplementedError("TODO: sample_z")


def reconstruction_loss(images, logits):
    """-log P(x|z) of each image, a float32 tensor [B], for uint8 images [B, 28, 28, 1] and the
    decoder's logits [B, 28, 28, 1]."""
    # TODO: every pixel is a Bernoulli variable with p = sigmoid(logit) and target x = intensity/255
    # in [0, 1]: its negative log-likelihood is -(x log p + (1 - x) log(1 - p)). Sum it over the
    # 784 pixels of each image, computed from the logits in a numerically stable way.
    raise NotImplementedError("TODO: reconstruction_loss")


def latent_loss(mean, sd):
    """KL(Q(z|x) || N(0, I)) of each image, a float32 tensor [B], for Q(z|x) = N(mean, sd^2)
    with `mean` and `sd` [B, z_dim]."""
    # TODO: the KL divergence between Normal(mean, sd) and the prior Normal(0, 1), analytically
    # (`tfp.distributions.kl_divergence`), summed over the z_dim latent dimensions.
    raise NotImplementedError("TODO: latent_loss")


def build_encoder(args):
    """The encoder: a keras.Model from uint8 images [B, 28, 28, 1] to the parameters
    [mean, sd] of Q(z|x), each [B, args.z_dim]. The grader measures it rebuilt from its
    architecture and weights (`to_json()`, `get_weights()`) by its own code: build it from
    built-in Keras layers and activations only (no Lambda layer, no custom layer or model)."""
    # TODO: a multilayer perceptron on the pixel intensities in [0, 1], with ReLU hidden layers
    # of the sizes in args.encoder_layers; from the last hidden layer, for each latent variable,
    # its mean (any real number) and its standard deviation (positive).
    raise NotImplementedError("TODO: build_encoder")


def build_decoder(args):
    """The decoder: a keras.Model from latent codes z [B, args.z_dim] to the logits
    [B, 28, 28, 1] of the pixels' Bernoulli distributions P(x|z). Like the encoder, it is
    measured rebuilt from its architecture and weights: built-in Keras layers and activations
    only (no Lambda layer, no custom layer or model)."""
    # TODO: a multilayer perceptron with ReLU hidden layers of the sizes in args.decoder_layers
    # and one output per pixel: its logit, the log-odds log(p / (1 - p)), any real number (the
    # losses turn logits into probabilities themselves).
    raise NotImplementedError("TODO: build_decoder")


class VAE(keras.Model):
    """The encoder and the decoder, trained together to minimise the negative ELBO."""

    def __init__(self, args):
        super().__init__()
        keras.utils.set_random_seed(args.seed)
        self.encoder = build_encoder(args)
        self.decoder = build_decoder(args)
        # The means of the two losses over an epoch; keras resets them when an epoch starts.
        self.trackers = [keras.metrics.Mean(name="reconstruction"), keras.metrics.Mean(name="latent")]

    @property
    def metrics(self):
        return self.trackers

    def train_step(self, images):
        """One gradient step on a batch of uint8 images [B, 28, 28, 1]; `fit` calls it."""
        # TODO: under a tf.GradientTape, encode the images, sample z from Q(z|x) and decode it;
        # `reconstruction` and `latent` are the batch means of the two losses. Then take one
        # step of self.optimizer on the negative ELBO, their sum, with respect to all the
        # trainable variables of the VAE (the encoder's and the decoder's).
        raise NotImplementedError("TODO: VAE.train_step")
        for tracker, value in zip(self.trackers, [reconstruction, latent]):
            tracker.update_state(value)
        return {tracker.name: tracker.result() for tracker in self.trackers}


def train(vae, images, args):
    """Trains the VAE on uint8 images [N, 28, 28, 1], printing the losses of every epoch."""
    def report(epoch, logs):
        reconstruction, latent = logs["reconstruction"], logs["latent"]
        print(f"Epoch {epoch + 1}/{args.epochs}: reconstruction loss {reconstruction:.2f} + latent loss "
              f"{latent:.2f} = -ELBO {reconstruction + latent:.2f} nats per image", flush=True)

    vae.compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    vae.fit(images, batch_size=args.batch_size, epochs=args.epochs, verbose=0,
            callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=report)])


# ======================================================================================
# Grader interface: what the grader calls. You need not read or change anything below.
# ======================================================================================
# Besides these, the grader calls parse_args(argv), VAE(args), train(vae, images, args), the
# functions above on their own, and keras.Model's to_json() and get_weights() of vae.encoder and
# vae.decoder: it measures the trained encoder and decoder rebuilt from them by its own code.
def encode(encoder, images):
    """Mean and sd of Q(z|x) for uint8 images [B, 28, 28, 1], as float32 numpy arrays [B, z_dim]."""
    mean, sd = encoder(np.asarray(images, np.uint8), training=False)
    return np.asarray(mean, np.float32), np.asarray(sd, np.float32)


def decode(decoder, z):
    """Logits [B, 28, 28, 1] of P(x|z) for latent codes z [B, z_dim], as a float32 numpy array."""
    return np.asarray(decoder(np.asarray(z, np.float32), training=False), np.float32)


def save_images(vae, args):
    """Saves samples from the prior and, for z_dim 2, the latent manifold, as PNG images."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    os.makedirs(args.plots, exist_ok=True)
    grids = {"prior_samples": np.random.default_rng(args.seed).normal(size=[100, args.z_dim])}
    if args.z_dim == 2:
        corners = np.linspace(-2, 2, 10)
        grids["latent_manifold"] = np.stack(np.meshgrid(corners, corners[::-1]), axis=-1).reshape(-1, 2)
    for name, z in grids.items():
        pixels = 1 / (1 + np.exp(-decode(vae.decoder, z)))  # Bernoulli means
        mosaic = pixels.reshape(10, 10, H, W).transpose(0, 2, 1, 3).reshape(10 * H, 10 * W)
        plt.imsave(os.path.join(args.plots, f"{name}.png"), mosaic, cmap="gray", vmin=0, vmax=1)
        print(f"Saved {os.path.join(args.plots, name)}.png")


def main(argv=None):
    args = parse_args(argv)
    # The course's datasets package lives at the repository root, next to this folder.
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import datasets
    assert getattr(datasets, "COURSE_DATASETS", False), f"{datasets.__file__} is not the course's datasets"
    data = datasets.load(args.dataset, train_size=args.train_size)

    vae = VAE(args)
    train(vae, data.train.images, args)
    reconstruction, latent = [], []
    for start in range(0, len(data.test), 1000):
        images = data.test.images[start:start + 1000]
        mean, sd = encode(vae.encoder, images)
        logits = decode(vae.decoder, sample_z(mean, sd))
        reconstruction.append(reconstruction_loss(images, logits).numpy())
        latent.append(latent_loss(mean, sd).numpy())
    reconstruction, latent = np.concatenate(reconstruction).mean(), np.concatenate(latent).mean()
    print(f"Test: reconstruction loss {reconstruction:.2f} + latent loss {latent:.2f} = "
          f"-ELBO {reconstruction + latent:.2f} nats per image")
    save_images(vae, args)


if __name__ == "__main__":
    main()
