// A certificate authority of a test, for pages served over HTTPS: openssl
// makes a CA and a server certificate for the hosts a test names (DNS
// names or IP addresses), and certutil puts the CA in an NSS database
// under a home directory of its own, which Chromium on Linux trusts when
// it runs with HOME set there (launchBrowser({ env: { HOME } })). Nothing
// outside the test's directory is touched.
//
//   const ca = await makeTestCA(dir, ['127.0.0.1', 'sip.example.test']);
//   // ca.caFile, ca.certFile, ca.keyFile; ca.home for Chromium's HOME
//   await trustCA(home, caFile);   // an NSS database trusting another CA
//
// Needs openssl and certutil (Debian packages openssl and libnss3-tools;
// scripts/deps.sh installs them).

import { spawnSync } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import path from 'node:path';

// testCAUnavailable says which tool is missing, or '' when none is.
export function testCAUnavailable() {
  for (const [tool, args, pkg] of [
    ['openssl', ['version'], 'openssl'],
    ['certutil', ['-H'], 'libnss3-tools'],
  ]) {
    const r = spawnSync(tool, args, { encoding: 'utf8' });
    if (r.error) return `${tool} is not installed (Debian package ${pkg}; scripts/deps.sh installs it)`;
  }
  return '';
}

function run(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { encoding: 'utf8', ...opts });
  if (r.error || r.status !== 0) {
    throw new Error(`${cmd} ${args.join(' ')}: ${r.error ? r.error.message : `exit ${r.status}`}\n${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

// makeTestCA writes into dir a CA (ca.pem) and a server certificate for
// hosts (cert.pem, key.pem), both valid for a day, and an NSS database
// trusting the CA under dir/home. Returns { caFile, certFile, keyFile, home }.
export async function makeTestCA(dir, hosts) {
  await mkdir(dir, { recursive: true });
  const f = (name) => path.join(dir, name);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  run('openssl', ['req', '-x509', ...ec, '-keyout', f('ca-key.pem'), '-out', f('ca.pem'), '-days', '1',
    '-subj', '/CN=switchboard test CA', '-addext', 'basicConstraints=critical,CA:TRUE,pathlen:0',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  run('openssl', ['req', ...ec, '-keyout', f('key.pem'), '-out', f('leaf.csr'), '-subj', `/CN=${hosts[0]}`]);
  const san = hosts.map((h) => (isIP(h) ? `IP:${h}` : `DNS:${h}`)).join(',');
  await writeFile(f('leaf.ext'), `subjectAltName=${san}\nbasicConstraints=CA:FALSE\n` +
    'keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n');
  run('openssl', ['x509', '-req', '-in', f('leaf.csr'), '-CA', f('ca.pem'), '-CAkey', f('ca-key.pem'),
    '-CAcreateserial', '-out', f('cert.pem'), '-days', '1', '-extfile', f('leaf.ext')]);

  const home = f('home');
  await trustCA(home, f('ca.pem'));
  return { caFile: f('ca.pem'), certFile: f('cert.pem'), keyFile: f('key.pem'), home };
}

// trustCA makes an NSS database under home that trusts the CA of caFile
// (PEM) for servers: Chromium run with HOME=home trusts it. The Go tests
// hand their CA (transporttest.NewCA) to Chromium this way.
export async function trustCA(home, caFile) {
  const db = path.join(home, '.pki', 'nssdb');
  await mkdir(db, { recursive: true });
  run('certutil', ['-d', `sql:${db}`, '-N', '--empty-password']);
  run('certutil', ['-d', `sql:${db}`, '-A', '-t', 'C,,', '-n', 'switchboard test CA', '-i', caFile]);
}
