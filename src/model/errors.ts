/** A model directory that cannot be loaded; the message names the file and the problem. */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
}
