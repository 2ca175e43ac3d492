#!/usr/bin/env python3
"""A variational autoencoder (VAE) on MNIST.

The encoder maps an image x to the mean and standard deviation of a diagonal Gaussian
Q(z|x); a latent code z is sampled from it with the reparametrization trick
(z = mean + sd * epsilon, which `tfp.distributions.Normal(mean, sd).sample()` does), and
the decoder maps z to Bernoulli logits of the 28x28 pixels of P(x|z). Training minimises the
negative evidence lower bound, per image:

    -ELBO(x) = E_Q[-log P(x|z)] + KL(Q(z|x) || N(0, I))
             = reconstruction loss (a sum over the 784 pixels) + latent loss (a sum over z).

Pixel intensities x/255 in [0, 1] are the Bernoulli targets.

Run it, e.g. `python vae.py --z_dim 2 --epochs 5`: it prints the losses of every epoch and
saves images of samples from the prior (and, with --z_dim 2, of the latent manifold).

How it is graded (from grader/assignments/vae.py; tools/make_templates.py writes it):
    Limits: 600 s per training run, 120 s for any other question, 6 GiB of memory, 2 compute
    thread(s), and a file of at most 128 KiB.
"""
import argparse
import os
import sys

import keras
import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--batch_size", default=100, type=int, help="Batch size.")
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"], help="Dataset.")
    parser.add_argument("--decoder_layers", default="500,500", type=str, help="Decoder hidden layer sizes.")
    parser.add_argument("--encoder_layers", default="500,500", type=str, help="Encoder hidden layer sizes.")
    parser.add_argument("--epochs", default=10, type=int, help="Number of epochs.")
    parser.add_argument("--learning_rate", default=0.001, type=float, help="Adam learning rate.")
    parser.add_argument("--plots", default="vae_plots", type=str, help="Folder for the images.")
    parser.add_argument("--seed", default=42, type=int, help="Random seed.")
    parser.add_argument("--threads", default=2, type=int, help="Maximum number of threads to use.")
    parser.add_argument("--train_size", default=None, type=int, help="Limit the training images.")
    parser.add_argument("--z_dim", default=100, type=int, help="Dimension of the latent space.")
    return parser.parse_args(argv)


H, W, C = 28, 28, 1


def sample_z(mean, sd):
    """Samples z ~ N(mean, sd) so that gradients reach mean and sd (the reparametrization trick)."""
    # TODO: create a `tfp.distributions.Normal` with the given mean and sd and sample from it
    # (its samples are reparametrized: mean + sd * epsilon).
    raise NotImplementedError("TODO: sample_z")


def reconstruction_loss(images, logits):
    """-log P(x|z) of each image: a float32 tensor [B], the SUM over the pixels of the Bernoulli
    negative log-likelihood of the targets images/255 under the decoder's logits [B, 28, 28, 1]."""
    # TODO: convert the uint8 images to float32 targets in [0, 1], compute the per-pixel
    # negative log-likelihood (e.g. tf.nn.sigmoid_cross_entropy_with_logits) and sum it over
    # the pixels of each image.
    raise NotImplementedError("TODO: reconstruction_loss")


def latent_loss(mean, sd):
    """KL(Q(z|x) || N(0, I)) of each image: a float32 tensor [B], summed over the latent dimensions."""
    # TODO: compute the KL divergence analytically with `tfp.distributions.kl_divergence`
    # between Normal(mean, sd) and the standard normal prior, and sum it over z.
    raise NotImplementedError("TODO: latent_loss")


class VAE:
    def __init__(self, args):
        keras.utils.set_random_seed(args.seed)
        self.z_dim = args.z_dim
        encoder_layers = [int(size) for size in args.encoder_layers.split(",") if size]
        decoder_layers = [int(size) for size in args.decoder_layers.split(",") if size]

        # TODO: the encoder, a keras.Model from uint8 images [B, 28, 28, 1] to two outputs
        # [mean, sd], each [B, z_dim]: rescale the pixels to [0, 1], flatten, apply Dense layers
        # of the `encoder_layers` sizes with ReLU, then one Dense layer for the mean and one for
        # the sd, made positive (softplus, or exp of a log-sd).
        raise NotImplementedError("TODO: VAE.__init__")

        # TODO: the decoder, a keras.Model from z [B, z_dim] to logits [B, 28, 28, 1]: Dense
        # layers of the `decoder_layers` sizes with ReLU, a Dense layer of 28*28 logits (no
        # activation) and a Reshape.
        raise NotImplementedError("TODO: VAE.__init__")

        self.optimizer = keras.optimizers.Adam(args.learning_rate)
        # Compiled once for any batch size (the None dimension avoids retracing).
        self._train = tf.function(self.train_step, input_signature=[tf.TensorSpec([None, H, W, C], tf.uint8)])
        self._encode = tf.function(lambda x: self.encoder(x, training=False),
                                   input_signature=[tf.TensorSpec([None, H, W, C], tf.uint8)])
        self._decode = tf.function(lambda z: self.decoder(z, training=False),
                                   input_signature=[tf.TensorSpec([None, args.z_dim], tf.float32)])

    def train_step(self, images):
        """One gradient step on a batch of uint8 images; returns the batch means of the
        reconstruction and latent losses."""
        # TODO: under a tf.GradientTape, encode the images, sample z with `sample_z`, decode
        # it, and compute the loss: the batch mean of reconstruction_loss + latent_loss. Apply
        # its gradient to the trainable variables of both the encoder and the decoder.
        raise NotImplementedError("TODO: VAE.train_step")

    def encode(self, images):
        """Mean and sd of Q(z|x) for uint8 images [B, 28, 28, 1], as float32 numpy arrays [B, z_dim]."""
        mean, sd = self._encode(np.asarray(images, np.uint8))
        return mean.numpy(), sd.numpy()

    def decode(self, z):
        """Bernoulli logits [B, 28, 28, 1] of P(x|z) for latent codes z [B, z_dim]."""
        return self._decode(np.asarray(z, np.float32)).numpy()


def train(vae, images, args):
    """Trains for args.epochs epochs on uint8 images [N, 28, 28, 1], printing the losses."""
    rng = np.random.default_rng(args.seed)
    for epoch in range(args.epochs):
        permutation = rng.permutation(len(images))
        totals = np.zeros(2)
        for start in range(0, len(images), args.batch_size):
            batch = images[permutation[start:start + args.batch_size]]
            totals += np.array([loss.numpy() for loss in vae._train(batch)]) * len(batch)
        reconstruction, latent = totals / len(images)
        print(f"Epoch {epoch + 1}/{args.epochs}: reconstruction loss {reconstruction:.2f}, "
              f"latent loss {latent:.2f}, -ELBO {reconstruction + latent:.2f} nats per image", flush=True)


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
        pixels = 1 / (1 + np.exp(-vae.decode(z.astype(np.float32))))  # Bernoulli means
        mosaic = pixels.reshape(10, 10, H, W).transpose(0, 2, 1, 3).reshape(10 * H, 10 * W)
        plt.imsave(os.path.join(args.plots, f"{name}.png"), mosaic, cmap="gray", vmin=0, vmax=1)
        print(f"Saved {os.path.join(args.plots, name)}.png")


def main(argv=None):
    args = parse_args(argv)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
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
        mean, sd = vae.encode(images)
        logits = vae.decode(sample_z(mean, sd).numpy())
        reconstruction.append(reconstruction_loss(images, logits).numpy())
        latent.append(latent_loss(mean, sd).numpy())
    reconstruction, latent = np.concatenate(reconstruction).mean(), np.concatenate(latent).mean()
    print(f"Test: reconstruction loss {reconstruction:.2f}, latent loss {latent:.2f}, "
          f"-ELBO {reconstruction + latent:.2f} nats per image")
    save_images(vae, args)


if __name__ == "__main__":
    main()
