// An unmodified discord.js bot, pointed at shardtui's proxy by its REST base only (the gateway URL
// and the shard count come from the proxy's /gateway/bot), driven by tests/proxy/test_proxy_discordjs.py.
//
// Environment: SHARDTUI_API (e.g. http://127.0.0.1:7878/api) and SHARDTUI_TOKEN.
// stdout: one JSON object per line, {"event": ...}; stdin: one command per line
// ("presence NAME", "channels", "quit").
import { createInterface } from "node:readline";
import { Client, GatewayIntentBits } from "discord.js";

const emit = (event, fields = {}) => process.stdout.write(JSON.stringify({ event, ...fields }) + "\n");

const client = new Client({
  intents: [GatewayIntentBits.Guilds, GatewayIntentBits.GuildMessages],
  shards: "auto",
  rest: { api: process.env.SHARDTUI_API },
});

// Everything the library reports as going wrong, so the test can assert there is none.
client.on("warn", (message) => emit("warn", { message }));
client.on("error", (error) => emit("error", { message: String(error) }));
client.on("shardError", (error, id) => emit("shardError", { id, message: String(error) }));
client.on("shardDisconnect", (close, id) => emit("shardDisconnect", { id, code: close.code }));
client.on("shardReconnecting", (id) => emit("shardReconnecting", { id }));
client.on("invalidated", () => emit("invalidated"));

client.on("debug", (message) => { if (process.env.SHARDTUI_DEBUG) emit("debug", { message }); });
client.on("shardReady", (id) => emit("shardReady", { id }));
client.on("clientReady", () =>
  emit("ready", {
    shardCount: client.options.shardCount,
    shards: [...client.ws.shards.keys()].sort(),
    guilds: [...client.guilds.cache.values()].map((g) => ({ id: g.id, shard: g.shardId })),
  }),
);
client.on("shardResume", (id, replayed) => emit("shardResume", { id, replayed }));
client.on("raw", (packet, shard) => {
  if (packet.t === "MESSAGE_CREATE") emit("message", { shard, id: packet.d._sandbox_event_id });
});
client.on("channelCreate", (channel) => emit("channelCreate", { id: channel.id, guild: channel.guildId }));

const channels = () => [...client.channels.cache.keys()];

createInterface({ input: process.stdin }).on("line", async (line) => {
  const [command, ...rest] = line.trim().split(" ");
  if (command === "presence") {
    client.user.setPresence({ status: "dnd", activities: [{ name: rest.join(" ") }] });
    emit("presenceSent");
  } else if (command === "channels") {
    emit("channels", { ids: channels() });
  } else if (command === "quit") {
    await client.destroy();
    emit("destroyed");
    process.exit(0);
  }
});

client.login(process.env.SHARDTUI_TOKEN).catch((error) => {
  emit("loginFailed", { message: String(error) });
  process.exit(1);
});
