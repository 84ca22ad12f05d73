"""The deployment: the Foundry Local folder and inference_model.json, its PromptTemplate, and the
Foundry Local SDK in-process."""
