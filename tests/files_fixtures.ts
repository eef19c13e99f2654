// Shared fixtures for the server_files.ts tests: a temporary site with
// files, dotfiles and symlinks that point inside and outside the root.

/** Paths of a temporary tree; `root` is the folder to serve (already a real path). */
export interface Tree {
  base: string;
  root: string;
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Creates, under a fresh temp dir:
 *
 *     outside.txt, outside-dir/c.txt, root-evil/x.txt   (never servable)
 *     root/a.txt, root/sub/b.txt, root/.secret, root/.git/config
 *     root/link-in -> root/a.txt            (symlink inside: fine)
 *     root/link-out -> outside.txt          (symlink outside: 404)
 *     root/dir-out -> outside-dir           (folder symlink outside: 404)
 *     root/link-dot -> root/.secret         (symlink to a dotfile: 404)
 *     root/link-prefix -> root-evil/x.txt   (same prefix as the root: 404)
 */
export async function makeTree(): Promise<Tree> {
  const base = await Deno.realPath(
    await Deno.makeTempDir({ prefix: "files_test_" }),
  );
  const root = `${base}/root`;
  await Deno.mkdir(`${root}/sub`, { recursive: true });
  await Deno.mkdir(`${root}/.git`);
  await Deno.mkdir(`${base}/outside-dir`);
  await Deno.mkdir(`${base}/root-evil`);
  await Deno.writeTextFile(`${base}/outside.txt`, "OUTSIDE SECRET");
  await Deno.writeTextFile(`${base}/outside-dir/c.txt`, "OUTSIDE DIR SECRET");
  await Deno.writeTextFile(`${base}/root-evil/x.txt`, "PREFIX SECRET");
  await Deno.writeTextFile(`${root}/a.txt`, "hello a");
  await Deno.writeTextFile(`${root}/sub/b.txt`, "hello b");
  await Deno.writeTextFile(`${root}/.secret`, "DOT SECRET");
  await Deno.writeTextFile(`${root}/.git/config`, "GIT SECRET");
  await Deno.symlink(`${root}/a.txt`, `${root}/link-in`);
  await Deno.symlink(`${base}/outside.txt`, `${root}/link-out`);
  await Deno.symlink(`${base}/outside-dir`, `${root}/dir-out`);
  await Deno.symlink(`${root}/.secret`, `${root}/link-dot`);
  await Deno.symlink(`${base}/root-evil/x.txt`, `${root}/link-prefix`);
  return {
    base,
    root,
    async [Symbol.asyncDispose]() {
      await Deno.remove(base, { recursive: true });
    },
  };
}
