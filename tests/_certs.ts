/**
 * The one certificate helper: a throwaway self-signed leaf certificate for 127.0.0.1, made
 * by `openssl`, and an HTTP client that trusts it. Where openssl is missing the HTTPS tests
 * are skipped loudly ({@link certTestOptions}); under CI=true they run and fail.
 *
 * @example
 * ```ts ignore
 * Deno.test({ name: "...", ...certTestOptions(), async fn() {
 *   const cert = await makeCertificate(folder); // folder/cert.pem, folder/key.pem
 *   using client = Deno.createHttpClient({ caCerts: [cert.pem] });
 * } });
 * ```
 * @module
 */
import { join } from "node:path";
import { runProcess } from "./_process.ts";

const HAS_OPENSSL = await runProcess("openssl", ["version"]).then(
  (result) => result.code === 0,
  () => false,
);
const IN_CI = Deno.env.get("CI") === "true";
let warned = false;

/**
 * Test options for an HTTPS test: ignored (with a loud message) when openssl is missing,
 * except in CI, where the test runs and {@link makeCertificate} fails.
 */
export function certTestOptions(): { ignore: boolean } {
  if (!HAS_OPENSSL && !warned) {
    warned = true;
    console.warn(
      `\n!! openssl not found: ${
        IN_CI ? "FAILING (CI=true)" : "SKIPPING"
      } the HTTPS tests. Install it with: apt-get install -y openssl\n`,
    );
  }
  return { ignore: !HAS_OPENSSL && !IN_CI };
}

/** A certificate and its key, as files and as PEM text. */
export interface Certificate {
  certFile: string;
  keyFile: string;
  /** The certificate in PEM, for `Deno.createHttpClient({ caCerts: [pem] })`. */
  pem: string;
}

/**
 * Writes `cert.pem` and `key.pem` into `folder`: an EC P-256 leaf (not a CA, as rustls
 * requires) for IP 127.0.0.1, valid for a day.
 */
export async function makeCertificate(folder: string): Promise<Certificate> {
  const certFile = join(folder, "cert.pem");
  const keyFile = join(folder, "key.pem");
  const made = await runProcess("openssl", [
    ..."req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1".split(" "),
    ..."-nodes -days 1 -subj /CN=127.0.0.1".split(" "),
    ..."-addext subjectAltName=IP:127.0.0.1".split(" "),
    ..."-addext basicConstraints=critical,CA:FALSE".split(" "),
    ...["-keyout", keyFile, "-out", certFile],
  ]).catch((error) => {
    throw new Error(
      `openssl could not run (apt-get install -y openssl): ${error}`,
    );
  });
  if (made.code !== 0) throw new Error(`openssl failed: ${made.stderr}`);
  return { certFile, keyFile, pem: await Deno.readTextFile(certFile) };
}
