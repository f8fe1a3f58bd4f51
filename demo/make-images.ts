/**
 * Draws the demo's sample photos (committed in demo/images; run again only to change them):
 * simple scenes, so the offline `basic` engine has colours and shapes to describe.
 * `npx tsx demo/make-images.ts`
 */
import { mkdirSync } from "node:fs";
import { fileURLToPath } from "node:url";
import sharp from "sharp";

const W = 480;
const H = 320;
const scenes: Record<string, string> = {
  sunset: `<defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="#ff7e29"/><stop offset="1" stop-color="#8b1e3f"/></linearGradient></defs>
    <rect width="${W}" height="${H}" fill="url(#g)"/><circle cx="240" cy="230" r="60" fill="#ffd23f"/><rect y="250" width="${W}" height="70" fill="#2b1b2e"/>`,
  harbour: `<rect width="${W}" height="${H}" fill="#9fd3f5"/><rect y="180" width="${W}" height="140" fill="#1f5f99"/>
    <polygon points="150,180 200,90 200,180" fill="#ffffff"/><rect x="120" y="180" width="120" height="20" fill="#5a3d2b"/>`,
  forest: `<rect width="${W}" height="${H}" fill="#cfe8d0"/>${[40, 120, 200, 280, 360, 440]
    .map((x, i) => `<polygon points="${x - 40},300 ${x},${80 + (i % 3) * 30} ${x + 40},300" fill="#1e6b35"/>`)
    .join("")}<rect y="300" width="${W}" height="20" fill="#4a3a22"/>`,
  snow: `<rect width="${W}" height="${H}" fill="#e9eef2"/><polygon points="0,320 160,110 300,320" fill="#ffffff"/>
    <polygon points="200,320 340,140 480,320" fill="#c9d3dc"/>`,
  night: `<rect width="${W}" height="${H}" fill="#0b1a3a"/>${Array.from(
    { length: 40 },
    (_, i) => `<circle cx="${(i * 97) % W}" cy="${(i * 53) % 200}" r="2" fill="#fff7c2"/>`,
  ).join("")}<circle cx="400" cy="60" r="28" fill="#f4f1de"/>`,
  meadow: `<rect width="${W}" height="${H}" fill="#7ec8e3"/><rect y="160" width="${W}" height="160" fill="#5fa845"/>
    ${Array.from({ length: 30 }, (_, i) => `<circle cx="${(i * 61) % W}" cy="${190 + ((i * 37) % 120)}" r="5" fill="#ffe14d"/>`).join("")}`,
};

const dir = fileURLToPath(new URL("./images/", import.meta.url));
mkdirSync(dir, { recursive: true });
for (const [name, body] of Object.entries(scenes)) {
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}">${body}</svg>`;
  await sharp(Buffer.from(svg)).jpeg({ quality: 80 }).toFile(`${dir}${name}.jpg`);
}
