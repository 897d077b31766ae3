// The version vsys reports (--version, SARIF's tool version, the exporter's vsys_info), as package.json says.
export const VSYS_VERSION = '0.1.0';
