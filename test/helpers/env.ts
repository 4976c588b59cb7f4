/** Remember an environment variable a test suite changes; the function returned puts it back. */
export function saveEnv(name: string): () => void {
  const saved = process.env[name];
  return () => {
    if (saved === undefined) delete process.env[name];
    else process.env[name] = saved;
  };
}
