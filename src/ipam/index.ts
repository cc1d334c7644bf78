export * from "./ipam.js";
