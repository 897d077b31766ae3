// `vsys fix IMAGE`: arguments, the report (the files' as for directories, then the new image's
// layers and digests), exit status as `vsys fix` (1 when something still crashes under none).
import { parseArgs } from 'node:util';
import { isImageRef } from '../image/scan-image.js';
import type { FixImageRun } from '../fix/fix-image.js';
import { formatFixRun } from './format-fix.js';
import { EXIT, toJson, usageError, type Io } from './io.js';

export const FIX_IMAGE_HELP = `usage: vsys fix IMAGE -o OUT.tar [--format docker|oci] [--tag NAME:TAG]
       vsys fix IMAGE --push registry://HOST[:PORT]/REPO:TAG
       vsys fix IMAGE --dry-run

IMAGE is what vsys scan takes: a 'docker save' archive or an OCI layout in a tar
(IMAGE.tar), oci:DIR, or registry://HOST[:PORT]/REPO[:TAG|@DIGEST].

Every ELF file of the image's final filesystem (whiteouts applied) with a direct
call of the vsyscall page is rewritten as for files (see vsys fix --help). The new
image is the original layers, copied byte for byte (their digests do not change),
plus ONE added layer holding the rewritten files with their original tar headers
(mode, owner, times, xattrs; only the size may differ) and the hard links to them;
the config's rootfs.diff_ids and history gain an entry ("vsys fix: patched N
files (…)"), so the config and manifest digests are new. Patching the libc fixes
every program that imports from it. docker load, skopeo and umoci read the result.

options:
  -o, --output OUT.tar  write the fixed image there (a temporary name, renamed at
                        the end: nothing is written on failure)
  --format FMT          docker (a docker save archive, docker 25+ layout; the
                        default for a docker-archive input) or oci (an OCI layout
                        in a tar; the default otherwise)
  --tag NAME:TAG        the name in the archive (default: the input's own)
  --push REF            push to registry://HOST[:PORT]/REPO:TAG (blobs the registry
                        lacks, then the manifest); with or without -o
  --dry-run             the plan only: nothing is written
  --json                the report as one JSON document
  --creds USER:PASS     registry credentials (or VSYS_REGISTRY_CREDS)
  --insecure            allow plain http to registries other than localhost
  --workers N           worker threads for the analysis (default: as scan)
  -h, --help            this text

exit status: 0 nothing left that crashes under vsyscall=none, 1 something still
would (listed), 2 usage error, 3 the image could not be read or a file not judged

examples:
  vsys fix centos6.tar -o centos6-fixed.tar --tag centos:6-fixed && docker load -i centos6-fixed.tar
  vsys fix oci:./layout --format oci -o fixed-oci.tar
  vsys fix registry://localhost:5000/app:1 --push registry://localhost:5000/app:1-fixed
`;

/** Options of `vsys fix IMAGE` that take a value (so their values are not taken for the IMAGE). */
const VALUED = new Set(['-o', '--output', '--format', '--tag', '--push', '--creds', '--workers', '--backup']);

/** Whether `vsys fix ARGS` names an image: its first operand is one (scan's isImageRef). */
export function namesImage(args: readonly string[]): boolean {
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    if (VALUED.has(a)) {
      i++;
      continue;
    }
    if (a.startsWith('-')) continue;
    return isImageRef(a);
  }
  return false;
}

function short(d: string): string {
  return d.slice(0, 19);
}

export function formatFixImageRun(r: FixImageRun, dryRun: boolean): string {
  // The image with the added layer on top is judged again (dry run or not): its outcome is a scan's.
  const lines = [formatFixRun({ files: r.files, written: [], unjudged: r.unjudged, changes: r.changes, stillCrash: r.stillCrash, rescanned: true }, dryRun).trimEnd()];
  lines.push('', `image ${r.image.ref} [${r.image.platform}]: ${r.image.layers} layer(s), config ${short(r.image.configDigest)}`);
  if (r.added.length > 0) lines.push(`${dryRun ? 'would add' : 'added'} one layer holding ${r.added.length} file(s)${r.links.length ? ` and ${r.links.length} hard link(s)` : ''}: ${r.added.map((a) => a.path).join(', ')}`);
  else lines.push('nothing to rewrite: the image is written with its layers and config unchanged');
  const res = r.result;
  if (res) {
    if (res.layer) lines.push(`  layer ${res.layer.digest} (${res.layer.size} bytes, uncompressed); the ${r.image.layers} original layer(s) keep their digests`);
    lines.push(`  config ${res.configDigest}`, `  manifest ${res.manifestDigest}`);
  }
  if (r.output) lines.push(`wrote ${r.output.path} (${r.output.format === 'docker' ? 'docker-archive' : 'OCI layout tar'}${r.output.name ? `, ${r.output.name}` : ''})`);
  if (r.pushed) lines.push(`pushed ${r.pushed.ref}@${r.pushed.digest} (${r.pushed.uploaded.length} blob(s) uploaded, ${r.pushed.present.length} already there)`);
  return lines.join('\n') + '\n';
}

/** Runs `vsys fix IMAGE …` (called by the fix command when its operand is an image). */
export async function runFixImage(args: string[], io: Io): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      output: { type: 'string', short: 'o' },
      format: { type: 'string' },
      tag: { type: 'string' },
      push: { type: 'string' },
      'dry-run': { type: 'boolean' },
      json: { type: 'boolean' },
      creds: { type: 'string' },
      insecure: { type: 'boolean' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    io.stdout.write(FIX_IMAGE_HELP);
    return EXIT.ok;
  }
  if (positionals.length !== 1) throw usageError('fix: give one IMAGE at a time');
  const dryRun = values['dry-run'] === true;
  if (dryRun && (values.output !== undefined || values.push !== undefined)) throw usageError('fix: --dry-run writes nothing; leave out -o and --push');
  if (!dryRun && values.output === undefined && values.push === undefined) throw usageError('fix: an image needs -o OUT.tar, --push registry://HOST/REPO:TAG or --dry-run');
  const format = values.format;
  if (format !== undefined && format !== 'docker' && format !== 'oci') throw usageError(`fix: --format is docker or oci, not '${format}'`);
  if (values.push !== undefined && !values.push.startsWith('registry://')) throw usageError(`fix: --push takes registry://HOST[:PORT]/REPO:TAG, not '${values.push}'`);
  if (values.tag !== undefined && !/^[^\s:@]+(:[\w][\w.-]{0,127})?$/.test(values.tag)) throw usageError(`fix: --tag '${values.tag}' is not NAME[:TAG]`);
  const workers = values.workers === undefined ? undefined : Number(values.workers);
  if (workers !== undefined && !(Number.isInteger(workers) && workers >= 0)) throw usageError('fix: --workers takes a whole number');
  const creds = values.creds ?? process.env.VSYS_REGISTRY_CREDS;
  const { fixImage } = await import('../fix/fix-image.js');
  const run = await fixImage(positionals[0] as string, {
    ...(values.output !== undefined ? { output: values.output } : {}),
    ...(format ? { format } : {}),
    ...(values.tag !== undefined ? { tag: values.tag } : {}),
    ...(values.push !== undefined ? { push: values.push } : {}),
    ...(dryRun ? { dryRun } : {}),
    ...(creds ? { creds } : {}),
    ...(values.insecure ? { insecure: true } : {}),
    ...(workers !== undefined ? { workers } : {}),
  });
  const exit = run.stillCrash.length > 0 ? EXIT.findings : run.unjudged.length > 0 ? EXIT.runtime : EXIT.ok;
  if (values.json) io.stdout.write(toJson({ ...run, dryRun, exit }, 0) + '\n');
  else io.stdout.write(formatFixImageRun(run, dryRun));
  return exit;
}
